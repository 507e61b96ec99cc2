"""``e2e.py`` with one change to the tierserve-scheduler's configuration, to see where its
CPU per pod goes (an experiment, not a configuration to ship):

- ``no-bind-verb``: kube-scheduler binds the pods itself (the extender only filters;
  no unit annotations ride on the Binding, so the extender's counts are not kept);
- ``no-percentage``: without ``percentageOfNodesToScore: 100`` (kube-scheduler's adaptive
  default: it filters a sample of the nodes).

    python bench/extender/variant.py no-bind-verb [--nodes 500 --pods 300 --rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e

import tierserve.testing.kube as testbed

VARIANTS = ("no-bind-verb", "no-percentage")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: variant.py {{{','.join(VARIANTS)}}} [e2e.py options]")
    variant = sys.argv.pop(1)
    stanza, config = testbed.extender_stanza, testbed.scheduler_config
    if variant == "no-bind-verb":

        def without_bind(url_prefix: str, **kw: Any) -> Any:
            out = stanza(url_prefix, **kw)
            out.pop("bindVerb")
            return out

        testbed.extender_stanza = without_bind
    else:

        def without_percentage(*args: Any, **kw: Any) -> str:
            out = yaml.safe_load(config(*args, **kw))
            out.pop("percentageOfNodesToScore", None)
            return yaml.safe_dump(out, sort_keys=False)

        e2e.scheduler_config = without_percentage
    e2e.main()


if __name__ == "__main__":
    main()
