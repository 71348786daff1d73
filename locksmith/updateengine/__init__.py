"""Our update engine: the com.coreos.update1 D-Bus service, Omaha updates, A/B USR install."""
