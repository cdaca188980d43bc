package gate

allow if [1, 2] = {"a": 1}
