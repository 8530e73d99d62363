"""Running the product: settings, logging, metrics, the Temporal binaries and dev server, the worker's wiring."""
