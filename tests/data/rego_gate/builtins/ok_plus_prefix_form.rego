package gate

three := plus(1, 2)
