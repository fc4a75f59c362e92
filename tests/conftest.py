"""Shared test set-up. Broker tests find or start the local Kafka through the plugin below."""

import os

# Tests never inherit a developer's engagewatch settings (ENGAGEWATCH_TEST_* are the tests' own).
for _name in [n for n in os.environ if n.startswith("ENGAGEWATCH_") and not n.startswith("ENGAGEWATCH_TEST_")]:
    del os.environ[_name]

pytest_plugins = ["kafka_broker"]
