"""What the sample suites share (copied next to them by
test_pytest_plugins.py): ``EXPECT_LOOP`` names the loop their tests must run
on; ``EVENTS_LOG`` collects what their fixtures and tests did, in order."""

import asyncio
import os

EXPECT = os.environ["EXPECT_LOOP"]


def log(event):
    with open(os.environ["EVENTS_LOG"], "a") as f:
        f.write(event + "\n")


def loop_kind():
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
