package gate

allow if input = {"x": 1}
