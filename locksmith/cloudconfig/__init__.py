"""coreos-cloudinit: read a host's cloud-config at boot, validate it, and apply it section by section.

The way through, one module each:
  datasource (file, config drive, URL, kernel command line) -> userdata (gzip, #cloud-config or #!)
  -> substitute ($private_ipv4 …) -> validate (node tree against `schema`; the agent's and engine's
  values through `settings_check`) -> apply (each section on its own: system, accounts, services,
  units), every file through `rootfs` (confined to --root, atomic) and every command through `runner`.
`main` is the command line.
"""
