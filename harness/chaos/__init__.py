"""The chaos harness: M hosts, a three-member etcd, injected faults, and a checker of the safety invariant."""
