"""VPOI (Wang et al., WWW 2017, "What your images reveal"), item recommendation only.

Score, as in BPR matrix factorisation:

    r_ai = u_a . v_i

The images tie the free embeddings to a learned linear projection P (feature_dim -> dim) of
their mean visual features:

    cbar_i = (1 / |F_i|) sum_{k in F_i} c_k        item i's frames F_i, frame features c_k
    dbar_a = (1 / |I_a|) sum_{i in I_a} cbar_i     user a's distinct training items I_a

For a batch of B users a_b, positives i_b and negatives j_b1..j_bn the objective is

    mean_{b, n} -ln sigma(r_{a_b i_b} - r_{a_b j_bn})
    + (1 / B) sum_b [ l2 (||u_a||^2 + ||v_i||^2 + sum_n ||v_j||^2)
                      + lambda_item (||v_i - P cbar_i||^2 + sum_n ||v_j - P cbar_j||^2)
                      + lambda_user ||u_a - P dbar_a||^2 ]
    + l2_projection ||P||_F^2

(the first line is the shared ``bpr_loss`` of the training loop; ``triplet_scores`` returns the
rest as its penalty). Every tie counts once per appearance of its row in the batch, like the
L2 term. Scores use u and v only; the ties shape them during training.

Adaptations of the paper:
- the image features are the dataset's pre-extracted frame features, fixed, instead of CNN
  features learned end to end;
- the feedback is implicit user-item interactions only, ranked with BPR instead of the paper's
  matrix-factorisation fit of the check-in matrix;
- an item's images are its frames, averaged into cbar_i;
- the images a user uploaded are not in the data: they are stood in for by the frames of the
  user's training items, averaged per item and then over items into dbar_a (zero for a user with
  no training items, whose tie is then a plain L2 term).

Defaults: l2 and l2_projection as in BPR and VBPR; lambda_item = 1e-3 and lambda_user = 3e-2
gave the best validation NDCG@10 of 27 settings (ties in 0 and 1e-3 .. 1, l2_projection in
1e-3 .. 0.1) on MovieLens-Bundles: 0.353 against BPR's 0.326 at seed 0, and 0.351 and 0.350
against 0.322 and 0.326 at seeds 1 and 2. Stronger ties, the item tie above all (an item row is
tied once per appearance, negatives included), pull the embeddings towards the direction all
image features share: 0.312 at lambda_item = 0.1 alone, 0.049 with both ties at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jifr.models.base import (
    ModelInputs,
    Recommender,
    linear,
    mean_over_training_items,
    normal_embedding,
    product_into,
    seeded_generator,
    squared_norm,
)
from jifr.models.frames import FrameStore, frame_means


@dataclass(frozen=True)
class VPOIConfig:
    dim: int = 32
    l2: float = 1e-3  # on u and v of each batch
    l2_projection: float = 1e-2  # on P (global)
    lambda_item: float = 1e-3  # lambda_v: ties v_i to P cbar_i
    lambda_user: float = 3e-2  # lambda_u: ties u_a to P dbar_a

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError("dim must be >= 1")
        if min(self.l2, self.l2_projection, self.lambda_item, self.lambda_user) < 0:
            raise ValueError("l2, l2_projection, lambda_item and lambda_user must be >= 0")


class VPOI(Recommender):
    name = "vpoi"
    writes_scores_into = True
    ranks_frames = False
    item_features: Tensor  # (n_items, D) buffer: cbar_i
    user_features: Tensor  # (n_users, D) buffer: dbar_a

    def __init__(self, config: VPOIConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        generator = seeded_generator(seed)
        self.config = config
        self.store = FrameStore(inputs.frames)
        self.user_collab = normal_embedding(inputs.n_users, config.dim, generator)  # u_a
        self.item_collab = normal_embedding(inputs.n_items, config.dim, generator)  # v_i
        self.projection = linear(self.store.dim, config.dim, generator, bias=False)  # P
        item_features = self.store.item_means()
        self.register_buffer("item_features", item_features, persistent=False)
        self.register_buffer("user_features", mean_over_training_items(inputs, item_features), persistent=False)

    def _projected(self, features: Tensor, rows: Tensor) -> Tensor:
        """P feature of ``rows`` (any shape) of ``features`` (n, D), each distinct row projected once;
        F.embedding gathers from the projection (deterministic backward)."""
        distinct, slot = torch.unique(rows, return_inverse=True)
        return F.embedding(slot, self.projection(features[distinct]))

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u = self.user_collab(users)
        v_pos, v_neg = self.item_collab(positives), self.item_collab(negatives)
        items = torch.cat([positives, negatives.flatten()])
        item_ties = torch.cat([v_pos, v_neg.flatten(0, 1)]) - self._projected(self.item_features, items)
        user_ties = u - self._projected(self.user_features, users)
        per_batch = (
            self.config.l2 * squared_norm(u, v_pos, v_neg)
            + self.config.lambda_item * squared_norm(item_ties)
            + self.config.lambda_user * squared_norm(user_ties)
        )
        penalty = per_batch / len(users) + self.config.l2_projection * squared_norm(self.projection.weight)
        return (u * v_pos).sum(-1), (u[:, None, :] * v_neg).sum(-1), penalty

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.user_collab(users) * self.item_collab(items)).sum(-1)

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        return product_into(self.user_collab(users), self.item_collab.weight, out)

    new_item_score = (
        "v_i = lambda_item / (l2 + lambda_item) P cbar_i, the minimiser of its two regularisers "
        "(the L2 term and the tie to its images): r_ai = u_a.v_i"
    )

    def new_item_scores(self, users: Tensor, features: Tensor, counts: Tensor) -> Tensor:
        """(B, n_new) u_a . v_i with v_i the value its regularisers alone give it (see ``new_item_score``)."""
        if not self.scores_new_items():
            raise NotImplementedError(self.new_item_refusal())
        shrink = self.config.lambda_item / (self.config.l2 + self.config.lambda_item)
        return self.user_collab(users) @ (shrink * self.projection(frame_means(features, counts))).T

    def scores_new_items(self) -> bool:
        return self.config.lambda_item > 0

    def new_item_refusal(self) -> str:
        return (
            f"{self.model_name} with lambda_item = 0 cannot score a new item: its item embeddings are not "
            "tied to their images, so an item without interactions has no embedding"
        )
