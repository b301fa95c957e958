"""The engine: rollout, replay buffer, training chunk, evaluation, driver loop."""
