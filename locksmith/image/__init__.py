"""The OS image builder (`locksmith-image`): a Debian 12 root tree, an A/B CoreOS disk, its formats, qemu."""
