"""Thin D-Bus adapters: the system bus, the update engine (watching it, send-need-reboot) and logind."""
