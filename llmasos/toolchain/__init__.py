"""Tool chains: data, training and evaluation that build on the kernel and the tools."""
