"""Run every bench/bench_*.py; exit non-zero if any missed its target."""

import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
failed = []
for script in sorted(glob.glob(os.path.join(here, 'bench_*.py'))):
    if subprocess.run([sys.executable, script], check=False).returncode != 0:
        failed.append(os.path.basename(script))
if failed:
    sys.exit('targets missed: %s' % ', '.join(failed))
