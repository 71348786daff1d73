"""Host-side groundwork for a fleet of qemu VMs booted from our image: the network namespace they live
in (`netns`), the TLS material of their etcd cluster (`pki`), and each VM's cloud-config (`hostconfig`).
Nothing here boots a VM or touches the host's own network.
"""
