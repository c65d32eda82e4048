"""``python -m bytestreamd.ctl``: the same as the ``bytestreamctl`` script."""

import sys

from bytestreamd.ctl import main

sys.exit(main())
