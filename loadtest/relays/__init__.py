"""Relays Sluice is compared against: the floor (:mod:`.floor`, write + drain
per event) and the unbounded baseline (:mod:`.baseline`, no drain), both built
by :mod:`.app`."""
