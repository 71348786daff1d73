"""locksmithd: the agent that reboots this host when an update is ready, as its strategy allows.

machine.py is the state machine (read it top to bottom); main.py wires it to the real world
(config, D-Bus, the KV store, systemd) and is the `locksmithd` console script.
"""
