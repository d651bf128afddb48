"""`make demo`: the main job of cni-ignite, end to end, in throwaway namespaces."""
