"""edgepack: take a PyTorch model to an edge device.

Heavy libraries (torch, litert_torch, ai_edge_quantizer, ai_edge_litert) are imported
inside the functions that need them so that `edgepack --help` stays instant.
"""

__version__ = "0.1.0"
