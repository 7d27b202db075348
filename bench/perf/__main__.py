"""`python -m bench.perf --memory-case NAME`: one memory measurement in a fresh process, JSON on stdout.

The `memory` suite of `bench perf` runs each case this way (the command for people is `bench perf`).
"""

import json
import sys

from bench.perf.suites.memory import MEMORY_CASES, memory_case

if len(sys.argv) == 3 and sys.argv[1] == "--memory-case" and sys.argv[2] in MEMORY_CASES:
    print(json.dumps(memory_case(sys.argv[2])))
else:
    sys.exit(f"usage: python -m bench.perf --memory-case {{{'|'.join(MEMORY_CASES)}}} (the command is `bench perf`)")
