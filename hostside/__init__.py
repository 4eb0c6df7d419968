"""Host side of gamebed: the timestamp trailer, the AF_PACKET shim, the BPF stamper.

The shim and the BPF programs need root (raw sockets, tc); trailer code does not.
"""
