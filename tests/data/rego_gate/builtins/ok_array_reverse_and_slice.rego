package gate

r := array.reverse(array.slice([1, 2, 3], 0, 2))
