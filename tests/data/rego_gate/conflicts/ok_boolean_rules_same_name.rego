package gate

deny if input.a

deny := true if input.b
