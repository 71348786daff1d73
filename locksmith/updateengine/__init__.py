"""Our update engine: the `update1.SERVICE` D-Bus service, Omaha updates, A/B USR install."""
