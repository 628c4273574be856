"""The stability protocol: anchors, phases, measures and statistics."""
