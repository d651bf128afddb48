"""`python -m cni_ignite.node`: the multi-node agent (also `cni-ignite node`)."""

import sys

from . import main

if __name__ == "__main__":  # importing this module (e.g. the frozen import check) must not start the agent
    sys.exit(main())
