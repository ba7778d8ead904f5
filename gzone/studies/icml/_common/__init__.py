"""What the ICML studies share (no study imports a sibling study):

* :mod:`.sweep` — the subspace sweep of the zone studies (Fig. 1, 2, 4 left);
* :mod:`.grid` — the training grid of Sec. 5 (Fig. 8, 9, 12 right) and its figures;
* :mod:`.outside` — the pieces of the App. E studies (training runs outside the zone);
* the paper's model/data settings below, which the presets of every study combine.
"""

#: the paper's two settings (Fig. 2 left and right)
LENET300_FASHION = {"model": "lenet300", "dataset": "fashion_mnist"}
LENET5_CIFAR10 = {"model": "lenet5", "dataset": "cifar10"}
