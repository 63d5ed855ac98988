"""New items: items that arrive after training, with frames but no interactions.

A new item is added to a trained run (``jifr items add``, ``POST /v1/items``) with its frames'
images, encoded by the encoder that made the run's frame features, or with precomputed
features. It is scored from its frames alone (``Recommender.new_item_scores``: what the model
learned from interactions, an item has none of, takes its prior mean), its frames are ranked
for each user like any frame (``Recommender.new_frame_scores``), and it is kept next to the run
in ``RUN/new-items/`` (``jifr.items.store``), so a restarted service still has it.

- ``jifr.items.store``: the on-disk store, its checks and limits, atomic and locked writes;
- ``jifr.items.encode``: decoding uploaded images and encoding them as the run's frames were;
- ``jifr.items.add``: ``add_item``, the one way in, shared by the command line and the service;
- ``jifr.items.score``: new items' scores and frame orders, merged exactly with the catalogue's.
"""
