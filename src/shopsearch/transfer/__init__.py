"""Cross-domain / multi-market transfer: models, training regimes and the transfer protocol.

See :mod:`shopsearch.transfer.protocol` for the API (``subsample_target``, ``train_transfer``)
and :mod:`shopsearch.transfer.registry` for the method names.
"""
