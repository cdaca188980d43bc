package gate

shout := upper([n | some n in input.names])
