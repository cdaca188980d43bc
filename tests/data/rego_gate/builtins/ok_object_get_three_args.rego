package gate

v := object.get(input, "a", "default")
