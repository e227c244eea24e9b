"""Entry points (`python -m experiments.<name>`).

Config files import their siblings as `from configs import default`, and
sweep files `from configs import mnist`; `configs/` is this package's sibling,
so its parent directory goes on `sys.path` here, which lets any entry point
load a config file by path from any working directory.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if _ROOT not in sys.path:
  sys.path.append(_ROOT)
