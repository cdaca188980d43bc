package gate

msg := $"labels: {count(object.keys(input.labels))} # not a comment"

other := $"plain" # a comment with $"x {y}"
