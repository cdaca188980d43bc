package gate

rest := set_diff({1, 2}, {2})
