"""What the engine learns from questions: the training set, the tuned query model and the
answerability model. Trained by ``spacesec tune``; loaded by the engine like the index."""
