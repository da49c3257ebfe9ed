"""``streamkit bench``: generate a dataset, start the servers as separate processes, measure.

``dataset`` writes the data, ``servers`` runs and watches the processes (``baseline`` is a
plain pyarrow Flight server, the yardstick), ``measure`` times each path, ``report`` renders.
"""
