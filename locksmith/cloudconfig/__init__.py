"""coreos-cloudinit: read a host's cloud-config at boot, validate it, and apply it section by section."""
