"""The local fleet demo (`locksmith-demo`): simulated hosts on one machine, all real parts."""
