"""The claims `results/claims.md` tests: what each paper says, where, and which rows decide it.

Zoo labels and the autoencoder come from `bench.store.claims_catalog`, shared with
`bench.execution.claims`, which runs every selection named here (a test checks that it does).
"""

from __future__ import annotations

from bench.report.claims import AboveChance, Below, Claim, Lower, Rate, Select, Setting, Shrinks
from bench.store.claims_catalog import (
    AE,
    C2M3_MLP,
    CNN_CHANNELS,
    CNN_RELU,
    CNN_TANH,
    CNN_ZOO_RECIPE,
    GR_MLP_WIDTHS,
    INR,
    MLP_WIDTHS,
    SINKHORN_MID,
    SINKHORN_MLP,
    WIDTH_STUDIES,
    gr_mlp,
    mlp_zoo,
)

# The bibliography the claims cite (authors, title, venue, arXiv id)
BIB = {
    "ae": "The ScaleGMN autoencoder: a symmetry-aware weight-space autoencoder built on ScaleGMN (Kalogeropoulos, "
          "Bouritsas, Panagakis, 'Scale Equivariant Graph Metanetworks', NeurIPS 2024, arXiv:2406.10685); the claims "
          "quoted are from its poster, which has no public paper or arXiv id.",
    "gitrebasin": "S. K. Ainsworth, J. Hayase, S. Srinivasa, 'Git Re-Basin: Merging Models modulo Permutation "
                  "Symmetries', ICLR 2023, arXiv:2209.04836.",
    "c2m3": "D. Crisostomi, M. Fumero, D. Baieri, F. Bernard, E. Rodola, 'C2M3: Cycle-Consistent Multi-Model "
            "Merging', NeurIPS 2024, arXiv:2405.17897.",
    "combinability": "A. Csiszarik, M. F. Kiss, P. Korosi-Szabo, M. Muntag, G. Papp, D. Varga, 'Mode Combinability: "
                     "Exploring Convex Combinations of Permutation Aligned Models', arXiv:2308.11511 (2023).",
    "sinkhorn": "F. A. G. Pena, H. R. Medeiros, T. Dubail, M. Aminbeidokhti, E. Granger, M. Pedersoli, 'Re-basin via "
                "implicit Sinkhorn differentiation', CVPR 2023, arXiv:2212.12042.",
    "deepalign": "A. Navon, A. Shamsian, E. Fetaya, G. Chechik, N. Dym, H. Maron, 'Equivariant Deep Weight Space "
                 "Alignment', ICML 2024, arXiv:2310.13397.",
}
# 'small', as claim 5 tests it: the mean empirical loss barrier of aligned uniform combinations below this (nats);
# the paper's own figure is 0.044 (CIFAR-10 ResNet-20 x32)
SMALL_BARRIER = 0.1

# objective=mid is sinkhorn-rebasin's default, so `sinkhorn-rebasin[objective=mid]` (the claim run's spec) is
# stored under the plain name: method specs at their defaults normalise to it (one key, one variant)
MID = "sinkhorn-rebasin"
ZOO_TEXT = {INR: "SIREN 2-32-32-1 INRs of Fashion-MNIST images", CNN_RELU: "CNN Zoo net, ReLU, 16 channels",
            CNN_TANH: "CNN Zoo net, tanh, 16 channels",
            # the papers' own recipes (`bench reproduce`; results/reproductions.md lists each one's deviations)
            gr_mlp(512): "MLP 784-512-512-512-10 in Git Re-Basin's recipe (Adam 1e-3, batch 500, 20 epochs, "
                         "LeCun-normal init, inputs in [0, 1])",
            SINKHORN_MLP: "MLP 784-512-512-10 in Sinkhorn re-basin's recipe (AdamW 1e-3, batch 1000, 50 epochs, "
                          "15% of the training images)",
            C2M3_MLP: "MLP 784-512-512-512-256-10 in C2M3's recipe (Adam 1e-3, batch 512, cosine restarts, "
                      "10 epochs)",
            CNN_ZOO_RECIPE: "CNN Zoo net, ReLU, 16 channels, in the CNN Zoo's recipe (86 epochs, batch 512, "
                            "hyperparameters sampled per network)"}
OFF_REGIME = "off the paper's regime"


SEED_ONLY = "one recipe, networks differ by seed (Adam 1e-3, 4 epochs)"


def _mlp(width: int) -> str:
    return f"MLP 784-{width}-{width}-{width}-10, ReLU, {SEED_ONLY}"


def _orbit(zoo: str, variant: str, action: str, eps: float) -> Select:
    return Select(zoo, "orbit", variant, (("action", action), ("eps", eps)))


def _claim1() -> Claim:
    settings = []
    for zoo in (INR, CNN_TANH):
        settings.append(Setting(f"{ZOO_TEXT[zoo]}: a planted signed permutation (PS), no noise", (
            Rate(_orbit(zoo, "sign-rebasin", "PS", 0.0), "recovered", 0.75, True,
                 "signed matching recovers the noise-free planted element in >= 3/4 of networks", control=True),
            Rate(_orbit(zoo, "git-rebasin", "PS", 0.0), "recovered", 0.25, False,
                 "permutation-only matching recovers it in <= 1/4"),
            Lower(_orbit(zoo, "sign-rebasin", "PS", 0.0), _orbit(zoo, "git-rebasin", "PS", 0.0), "loss_excess",
                  "signed matching's path excess is lower"),
            Rate(_orbit(zoo, "git-rebasin", "P", 0.0), "recovered", 0.75, True,
                 "permutation-only matching recovers a plain noise-free permutation (P) in >= 3/4", control=True))))
    return Claim(1, "Permutation-only matching fails on sign-acted networks; signed matching recovers exactly",
                 "ScaleGMN autoencoder paper; sign symmetries of odd activations", tuple(settings),
                 paper="No published rate. The autoencoder paper extends Git Re-Basin to +-1 scalings (poster [ae]); "
                       "Git Re-Basin (App. A.5) recovers a random permutation of ReLU nets exactly "
                       "in 3-4 passes, without sign flips.", references=(BIB["ae"], BIB["gitrebasin"]))


def _claim2() -> Claim:
    settings = tuple(
        Setting(f"{ZOO_TEXT[INR]}: orbit pairs (PS), weight noise eps = {eps:g}", (
            Lower(_orbit(INR, AE, "PS", eps), _orbit(INR, "sign-rebasin", "PS", eps), "loss_excess",
                  "the autoencoder's path excess (against the original endpoints) is lower than signed LAP's"),
            AboveChance(_orbit(INR, AE, "PS", eps), control=True, gate=True)))
        for eps in (0.0, 1e-3, 1e-2))
    return Claim(2, "The autoencoder's interpolation path lies lower than signed LAP's on orbit pairs, "
                    "robustly to weight noise", "ScaleGMN autoencoder paper", settings,
                 paper="No published number: the poster [ae] says the autoencoder 'presents a lower "
                       "loss barrier and is robust to added noise' (a figure; MNIST INRs, noise 0.005, image MSE). "
                       "Ours: Fashion-MNIST SIRENs, eps 0 / 1e-3 / 1e-2, loss path excess against the originals.",
                 ours=(2, 0), references=(BIB["ae"],),
                 note=f"Autoencoder: `{AE}`. The path excess charges it for the endpoints it changes, against the "
                      "original pair: a network and its transformed, noised copy. Noise that damages the copy more "
                      "than the decoder's reconstruction error does lets the decoded path lie below the originals' "
                      "mean loss (a negative excess): the decoder then denoises. Noise convention: our eps is the "
                      "standard deviation of N(0, eps^2) weight noise; the poster gives its noise (0.005) as a "
                      "variance, i.e. a standard deviation of about 0.071, which is larger than every eps here. At "
                      "eps = 0 and 1e-3 exact signed matching scores about 1e-9, so those settings test little. "
                      "Training budget: the committed autoencoder saw 4000 training INRs (`bench ae study`); the "
                      "poster's is not stated.")


def _claim3() -> Claim:
    settings = tuple(
        Setting(f"{ZOO_TEXT[zoo]}: independent pairs", (
            Lower(Select(zoo, "pairs", "sign-rebasin"), Select(zoo, "pairs", "scalegmn-ae"), "recon_acc",
                  "the autoencoder loses accuracy by reconstruction (exact signed matching loses none)"),
            Lower(Select(zoo, "pairs", "scalegmn-ae"), Select(zoo, "pairs", "sign-rebasin"), "acc_barrier",
                  "its accuracy barrier (between its own endpoints) is lower than signed matching's"),
            AboveChance(Select(zoo, "pairs", "scalegmn-ae"), control=True, gate=True)), regime=False)
        for zoo in (CNN_RELU, CNN_TANH))
    return Claim(3, "On CNNs the autoencoder trades reconstruction accuracy for a lower barrier",
                 "ScaleGMN autoencoder paper", settings,
                 paper="No published number: stated in words (poster [ae]) for the CIFAR-10 Small CNN "
                       "Zoo. Ours: Fashion-MNIST CNN Zoo nets.", ours=(0, 1), references=(BIB["ae"],),
                 note="Training budget: `scalegmn-ae` is trained on each zoo's training split only, 12 CNNs of the "
                      "default zoos' 48 (the poster's autoencoder was trained on the CIFAR-10 Small CNN Zoo's "
                      "training split, thousands of networks): a far smaller budget than the paper's. Accuracy in "
                      "[0, 1]: a cost of 0.1 is 10 points. Off the paper's regime only: the zoo trained with the "
                      "CNN Zoo's recipe (`bench reproduce cnn-zoo`) has 16 networks, all held out for testing, so "
                      "there is no training split to fit an autoencoder on; the reference budget needs an "
                      "accelerator (results/reproductions.md).")


def _claim4() -> Claim:
    settings = []
    # C2M3 merges networks of one recipe: the CNN Zoo's sample their hyperparameters per network (off the regime)
    grid = [(C2M3_MLP, n, True) for n in (3, 5)] + [(CNN_ZOO_RECIPE, n, False) for n in (3, 5)]
    grid += [(zoo, n, False) for zoo in (CNN_RELU, CNN_TANH) for n in (3, 5, 8)]
    for zoo, n, regime in grid:
            def merge(variant: str) -> Select:
                return Select(zoo, "merge", variant, (("n_models", n),))  # noqa: B023 (used at once)

            settings.append(Setting(f"{ZOO_TEXT[zoo]}: merging N = {n} networks", (
                Rate(merge("c2m3"), "cycle_error", 0.75, True, "C2M3's maps close every cycle in >= 3/4 of groups "
                     "(0 by construction: its maps compose through one universe)", zero=1e-12, control=True),
                Lower(merge("c2m3"), merge("git-rebasin"), "cycle_error",
                      "pairwise weight matching's cycle error is higher"),
                Lower(merge("c2m3"), merge("mergemany"), "loss_merged", "C2M3 merges at least as well as MergeMany",
                      tolerant=True),
                Lower(merge("c2m3"), merge("mergemany"), "loss_merged_repair", "the same after REPAIR",
                      tolerant=True)), regime=regime))
    return Claim(4, "C2M3's pairwise maps are cycle-consistent, pairwise methods' are not; C2M3 merges at least as "
                    "well as MergeMany, with and without REPAIR, for N = 3, 5, 8", "C2M3 (Crisostomi et al.)",
                 tuple(settings), ours=(2, 3),
                 references=(BIB["c2m3"],),
                 paper="C2M3's results table (authors' repository [c2m3]; N not stated there), test loss "
                       "MergeMany vs C2M3: MLP / EMNIST 1.13 vs 1.10 (REPAIR changes neither); ResNet20x2 / "
                       "CIFAR-10 2.06 vs 2.05, with REPAIR 2.30 vs 1.12; VGG16 / CIFAR-10 2.36 vs 2.34, with REPAIR "
                       "1.32 vs 1.23. "
                       "In its regime: its MLP in its recipe, N = 3 and 5 (groups drawn from 16 networks; N = 8 is "
                       "tested off the regime only); off it: CNNs in "
                       "the CNN Zoo's recipe (trained to convergence, but each with its own sampled hyperparameters, "
                       "where C2M3 merges networks of one recipe) and 16-channel Fashion-MNIST CNNs after 3 epochs "
                       "(they add N = 8 and tanh).",
                 note="Cycle error: the share of units that a -> b -> c -> a does not fix, over one "
                                       "triple per group. Merged loss in nats on the zoo's test images.")


def _claim5() -> Claim:
    settings = []
    for zoo, regime in ((gr_mlp(512), True), (CNN_ZOO_RECIPE, False), (INR, False), (CNN_RELU, False),
                        (CNN_TANH, False)):
        def probe(variant: str, name: str) -> Select:
            return Select(zoo, "combine", variant, (("probe", name),))  # noqa: B023 (used at once)

        checks = tuple(Lower(probe("git-rebasin", p), probe("naive", p), "loss_barrier",
                             f"{p}: aligned pairs combine with a lower barrier than unaligned ones")
                       for p in ("uniform", "bernoulli", "stitch"))
        checks += (Lower(probe("git-rebasin", "uniform"), probe("git-rebasin", "minmax"), "loss_barrier",
                         "per-weight min/max of aligned pairs has a higher barrier than uniform combinations"),
                   Below(probe("git-rebasin", "uniform"), "loss_barrier", SMALL_BARRIER,
                         f"uniform: the aligned pairs' empirical loss barrier is small (mean below {SMALL_BARRIER:g} "
                         "nats)"))
        settings.append(Setting(f"{ZOO_TEXT[zoo]}: independent pairs aligned by weight matching", checks, regime))
    return Claim(5, "Aligned pairs combine element-wise (uniform cube, Bernoulli, layer stitching) with small "
                    "barriers; per-weight min/max does not", "Mode Combinability (Csiszarik et al.)", tuple(settings),
                 ours=(1, 0),
                 references=(BIB["combinability"],),
                 paper="Mode Combinability [combinability], CIFAR-10 ResNet-20 x32: loss barrier 0.044 for the "
                       "uniform cube, 0.168 for Bernoulli vertices (Tiny-10: 0.332 and 0.767); stitching works and "
                       "min/max fails, in words. Nearest to its regime (pairs of one recipe, seeds differing, trained "
                       "to convergence, where matched pairs interpolate with ~0 barrier): Git Re-Basin's MLP at width "
                       "512 in its recipe (the paper's own ResNet-20 x32 on CIFAR-10 needs an accelerator); off it: "
                       "CNNs in the CNN Zoo's recipe (each with its own sampled hyperparameters), the INR zoo and "
                       "16-channel CNNs after 3 epochs, far narrower than x32.",
                 note="Empirical loss barrier: the worst loss over a probe's samples minus the endpoints' mean loss. "
                      f"'Small' is tested as a mean below {SMALL_BARRIER:g} nats (the paper's own figure is 0.044).")


def _claim6() -> Claim:
    mlp = tuple((w, Select(zoo, "pairs", "git-rebasin")) for w, zoo in WIDTH_STUDIES["mlp"].items())
    cnn = tuple((c, Select(zoo, "pairs", "git-rebasin")) for c, zoo in WIDTH_STUDIES["cnn"].items())
    paper = ("Git Re-Basin: VGG-16 (1/8-4x) and ResNet20 (1-32x) on CIFAR-10 reach ~0 barrier with width (figures "
             "only); MNIST MLP 3x512 'zero barrier'. Deep-Align (Table 1): MNIST MLP barrier naive 2.007, weight "
             "matching 0.047. In its regime: its MLP in its recipe at five widths (8 pairs each); off it: the same "
             "MLP after 4 epochs and the CNN at four channel counts after 3 (they add short training and convolutions: "
             "LMC grows with training, Git Re-Basin Fig. 3).")
    gr = tuple((w, Select(gr_mlp(w), "pairs", "git-rebasin")) for w in GR_MLP_WIDTHS)
    return Claim(6, "Barriers shrink as width grows (after weight matching)", "Git Re-Basin (Ainsworth et al.)",
                 paper=paper, settings=(
        Setting(f"MLP 784-w-w-w-10, w = {', '.join(map(str, GR_MLP_WIDTHS))}, in Git Re-Basin's recipe (Adam 1e-3, "
                "batch 500, 20 epochs): independent pairs",
                (Shrinks(gr, "loss_excess", "weight matching's loss path excess falls with width"),)),
        Setting(f"MLP 784-w-w-w-10, ReLU, w = {', '.join(map(str, MLP_WIDTHS))}, {SEED_ONLY}: independent pairs",
                (Shrinks(mlp, "loss_excess", "weight matching's loss path excess falls with width"),), regime=False),
        Setting(f"CNN Zoo net, ReLU, {', '.join(map(str, CNN_CHANNELS))} channels, hyperparameters varied as in the "
                "CNN Zoo: independent pairs",
                (Shrinks(cnn, "loss_excess", "weight matching's loss path excess falls with width"),), regime=False)),
                 references=(BIB["gitrebasin"], BIB["deepalign"]))


def _claim7() -> Claim:
    return Claim(7, "Sinkhorn re-basin's Mid objective lies below weight matching on small MLPs",
                 "Re-basin via implicit Sinkhorn differentiation (Pena et al.)", (
                     Setting(f"{ZOO_TEXT[SINKHORN_MLP]}: independent pairs", (
                         Lower(Select(SINKHORN_MLP, "pairs", SINKHORN_MID),
                               Select(SINKHORN_MLP, "pairs", "git-rebasin"), "loss_mid",
                               "Mid's midpoint loss is lower than weight matching's (both paths are flat here: "
                               "their worst point is an endpoint, so the path excess cannot tell them apart)"),)),
                     *(Setting(f"{_mlp(w)}: independent pairs", (
                         Lower(Select(mlp_zoo(w), "pairs", MID), Select(mlp_zoo(w), "pairs", "git-rebasin"),
                               "loss_excess", "Mid's loss path excess is lower than weight matching's"),), regime=False)
                       for w in (64, 128))),
                 paper="Sinkhorn re-basin's project figure (2-hidden-layer MLP, CIFAR-10, read off the plot): barrier "
                       "naive ~0.97, weight matching ~0.34, Mid ~0.06. Against it, Deep-Align (Table 1) finds its Rnd "
                       "variant worse than weight matching on a CIFAR-10 MLP (0.183 vs 0.156). In its regime: its "
                       "MLP in its recipe; off it: three hidden layers of 64 / 128 after 4 epochs, where weight "
                       "matching leaves a barrier for Mid to remove.",
                 note=f"In the regime: `{SINKHORN_MID}` (objective=mid), the reference's 180 steps of batch 1000; off "
                      f"it: `{MID}` (objective=mid, its default): 100 steps, batches of 512 training images, identity "
                      "start.",
                 references=(BIB["sinkhorn"], BIB["deepalign"]))


def _claim8() -> Claim:
    return Claim(8, "Weight matching lowers the barrier of independently fitted SIRENs", "Git Re-Basin, applied to "
                 "INRs by the metanetwork literature", tuple(
                     Setting(f"{ZOO_TEXT[INR]}: two independent fits of one image, {variant}", (
                         Lower(Select(INR, "pairs", variant), Select(INR, "pairs", "naive"), "loss_excess",
                               f"{variant}'s loss path excess is lower than naive averaging's"),))
                     for variant in ("git-rebasin", "sign-rebasin")),
                 paper="No published number for independent fits of one image (Deep-Align aligns independently fitted "
                       "sine-wave and CIFAR-10 INRs, in plots only).", references=(BIB["gitrebasin"], BIB["deepalign"]))


CLAIMS = (_claim1(), _claim2(), _claim3(), _claim4(), _claim5(), _claim6(), _claim7(), _claim8())
