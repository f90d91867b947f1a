"""A tour of a zoo in Python: select networks, check their recorded accuracy, run them on images.

    python examples/zoo_tour.py runs/first_hour
"""
import sys

import numpy as np

from popnet import Zoo, curves, data


def majority_vote(answers: np.ndarray, classes: int) -> np.ndarray:
  """The class most networks answered, per image: answers [networks, images] of class indices -> [images] (a tie
  goes to the smaller class index)."""
  counts = (answers[..., None] == np.arange(classes)).sum(0)  # [images, classes]
  return counts.argmax(-1)


def main(workdir: str) -> None:
  zoo = Zoo.open(workdir)
  print(zoo)
  final = zoo.select(epoch='last', status='ok')
  print('\nfinal test accuracy by activation (recorded):')
  print(final.groupby('activation')['test_accuracy'].describe()[['count', 'mean', 'min', 'max']].round(3))

  # The recorded accuracies are reproducible: the zoo keeps the exact evaluation subsets.
  again = zoo.evaluate(final, 'test')
  print(f'\nre-evaluated {len(final)} networks on the recorded test subset: max difference '
        f'{np.abs(again - final["test_accuracy"].to_numpy()).max():.2e}')

  # Any images: raw uint8 at any size are converted and scaled as in training.
  dataset = final['dataset'].iloc[0]
  images = data.load(dataset).test_x[:16]
  logits = zoo.predict(final, images)
  answers = logits.argmax(-1)  # [networks, images]
  vote = majority_vote(answers, logits.shape[-1])
  print(f'{len(final)} networks x {len(images)} {dataset} test images -> logits {logits.shape}; '
        f'the population agrees with its majority vote on {np.mean(answers == vote):.0%} of answers')

  table = curves.read(workdir)
  print('\nmedian validation accuracy per epoch:',
        table.groupby('epoch')['val_accuracy'].median().round(3).to_dict())


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'runs/first_hour')
