"""Provider ``xai``: grok-imagine (the OpenAI dialect with ratios and tiers instead of sizes)."""
