"""The per-attachment isolation guard (issue 15): no attachment can impersonate another or the gateway.

``config`` parses the ``guard`` key, ``rules`` builds the nftables text (pure), ``nft`` applies, removes
and checks it through ``nft -f -``. This module imports nothing: the plugins import what they use.
"""
