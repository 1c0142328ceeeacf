"""coopflower: the decentralised, secure cooperative learning paradigm as Flower strategies.

Modules follow the paper's concepts: ``ledger`` (the smart contract and chain backends),
``storage`` (content-addressed storage, IPFS), ``crypto`` (IVHE and the encryption interface),
``fusion`` (Fusion Strategies I and II, the MetaModel), ``strategy`` (the Flower strategies),
``client`` (computing and verification contributors), ``data`` (MNIST and partitions).
"""

__version__ = "0.1.0"
