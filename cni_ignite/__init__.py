"""cni-ignite: CNI bridge and IPAM plugins for microVM hosts."""

__version__ = "0.1.0"
