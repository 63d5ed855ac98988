"""BPR matrix factorisation (Rendle et al., UAI 2009): r_ai = u_a . v_i."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from jifr.models.base import ModelInputs, Recommender, normal_embedding, product_into, seeded_generator, squared_norm


@dataclass(frozen=True)
class BPRConfig:
    dim: int = 32
    l2: float = 1e-3  # lambda_1 on the embeddings of each batch (Theta_1 in eq. 3)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.l2 < 0:
            raise ValueError("dim must be >= 1 and l2 >= 0")


class BPR(Recommender):
    name = "bpr"
    writes_scores_into = True

    def __init__(self, config: BPRConfig, inputs: ModelInputs, seed: int = 0) -> None:
        super().__init__()
        generator = seeded_generator(seed)
        self.config = config
        self.user_collab = normal_embedding(inputs.n_users, config.dim, generator)  # u_a
        self.item_collab = normal_embedding(inputs.n_items, config.dim, generator)  # v_i

    def triplet_scores(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u = self.user_collab(users)
        v_pos, v_neg = self.item_collab(positives), self.item_collab(negatives)
        penalty = self.config.l2 * squared_norm(u, v_pos, v_neg) / len(users)
        return (u * v_pos).sum(-1), (u[:, None, :] * v_neg).sum(-1), penalty

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.user_collab(users) * self.item_collab(items)).sum(-1)

    def score_all(self, users: Tensor, out: Tensor | None = None) -> Tensor:
        return product_into(self.user_collab(users), self.item_collab.weight, out)
