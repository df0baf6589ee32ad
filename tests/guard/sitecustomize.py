"""Put tests/guard on a subprocess's PYTHONPATH and its Python gets the network guard."""

import network_guard

network_guard.install()
