"""The case: its contract types (inputs, signals, status), its child workflows' messages, its search attributes and the pure case core."""
