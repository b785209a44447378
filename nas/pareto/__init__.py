"""Trade-offs: the objectives a multi-objective search minimizes (the held-out metric and what a
policy costs), Pareto fronts, dominance of the hand designs and hypervolumes with a fixed reference
point, for every search strategy alike."""
from nas.pareto.front import Dominance, dominated_by, hypervolume, pareto_mask, to_minimization

__all__ = ["Dominance", "dominated_by", "hypervolume", "pareto_mask", "to_minimization"]
