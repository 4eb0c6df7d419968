"""The testbed: builds guest topologies (namespaces now, VMs later), runs sweeps.

Building needs root (namespaces, veths, tc, cgroups); the experiment spec and
`gamebed play` on loopback do not.
"""
