"""`autoencoder`: an (untrained) ScaleGMN autoencoder's encode + decode per network vs signed weight
matching per pair, as width grows."""

from __future__ import annotations

import torch

from bench.perf.timing import side_by_side, timing_rows


def autoencoder(widths=(32, 64, 128, 256, 512), networks: int = 8, repeats: int = 3) -> list[dict]:
    """Encode + decode per network of an untrained ScaleGMN autoencoder (the time does not depend on
    training) vs signed weight matching per pair, on SIRENs of growing width."""
    try:
        from methods.scalegmn_ae import ScaleGMNAutoencoder
    except ImportError as error:
        print(f"perf: autoencoder suite skipped ({error})", flush=True)
        return []
    from methods.weight_matching import weight_matching
    from zoos.inr import dwsnets_init
    from zoos.space import siren_space

    rows = []
    for w in widths:
        space = siren_space(w)
        params = dwsnets_init(space, list(range(networks)))
        model = ScaleGMNAutoencoder(seed=0).build(space)
        model.set_scales(params)
        model.eval()

        def ae(model=model, params=params):
            with torch.no_grad():
                return model.decode(model.encode(params))

        def matching(space=space, params=params):
            for i in range(1, networks):
                weight_matching(space, {k: v[0] for k, v in params.items()}, {k: v[i] for k, v in params.items()},
                                signed=True)

        times = side_by_side({"scalegmn-ae (encode+decode)": ae, "sign-rebasin (signed matching)": matching},
                             repeats)
        per = {"scalegmn-ae (encode+decode)": networks, "sign-rebasin (signed matching)": networks - 1}
        rows += timing_rows("autoencoder", times, per, width=w, networks=networks)
    return rows
