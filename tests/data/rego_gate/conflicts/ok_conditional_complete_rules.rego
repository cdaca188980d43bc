package gate

level := "high" if input.x > 10

level := "low" if input.x < 5
