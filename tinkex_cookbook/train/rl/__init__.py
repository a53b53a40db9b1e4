"""Reinforcement learning: environments, graders, rollouts and the datums they become."""
