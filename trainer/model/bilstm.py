"""Stacked bidirectional LSTM with `LSTMCell`'s variables, fast on CPU.

Same function, same variables as `tf1.nn.bidirectional_dynamic_rnn` over two
`tf1.nn.rnn_cell.LSTMCell`s (so checkpoints and exports of either load into
the other), computed the way a recurrent layer should be:

    <scope>/bilstm_<layer>/bidirectional_rnn/fw/forward/kernel
        float32 [input + units, 4 * units]  rows: input, then h; columns:
                                            gates i, j, f, o (glorot uniform)
    <scope>/bilstm_<layer>/bidirectional_rnn/fw/forward/bias
        float32 [4 * units]                 (zeros)
    ... and bw/backward/kernel, bw/backward/bias

    i, j, f, o = split(x @ kernel[:input] + h @ kernel[input:] + bias)
    c = sigmoid(f + 1.0) * c + sigmoid(i) * tanh(j)   (forget_bias 1.0)
    h = sigmoid(o) * tanh(c)

`LSTMCell` multiplies concat([x, h]) by the whole kernel at every time step.
Here the input part is one matmul over every real word of the batch (padding
is never projected), and only the recurrent part runs step by step, both
directions in one loop (a batched [2, B, units] x [2, units, 4 * units]
matmul). The loop's gradient is written out (backpropagation through time,
`_recurrence`): one small matmul per step, and the recurrent kernels'
gradient as one matmul after the loop. The backward direction reads each row
reversed over its own length, as `tf.reverse_sequence` in
`bidirectional_dynamic_rnn` does, and outputs past a row's length are zeros,
as `dynamic_rnn` gives.

Example (B = 2, W = 3, lengths [3, 1]): forward reads row 0 as words 0, 1, 2
and row 1 as word 0; backward reads row 0 as 2, 1, 0 and row 1 as 0. Output
row 1 is [h(word 0), 0, 0] in each direction's half.
"""

import tensorflow as tf

tf1 = tf.compat.v1

# Added to the forget gate's pre-activation (LSTMCell's default).
FORGET_BIAS = 1.0
# Directions, in the order of the stacked loop state and the output halves.
DIRECTIONS = (("fw", "forward"), ("bw", "backward"))


def stacked_bilstm(inputs: tf.Tensor, lengths: tf.Tensor, units: int,
                   num_layers: int, dropout: float = 0.0,
                   is_training: bool = False) -> tf.Tensor:
  """`num_layers` bidirectional LSTM layers over the first `lengths` words.

  Creates the variables of `bilstm_<layer>` under the current variable
  scope (see the module docstring).

  Args:
    inputs: float32 [B, W, D] with a static D; positions >= lengths are
      ignored.
    lengths: int32 [B] words per row, each in [0, W].
    units: LSTM units per direction.
    num_layers: stacked layers; layer k + 1 reads layer k's [.., 2 * units].
    dropout: dropout rate between layers while training (not after the
      last).
    is_training: enables the dropout.

  Returns:
    float32 [B, W, 2 * units]: forward outputs then backward outputs, zeros
    past each row's length.

  Example: inputs [1, 2, D], lengths [1], units 4, 1 layer -> [1, 2, 8] whose
  second position is all zeros.
  """
  batch, max_time = tf.shape(inputs)[0], tf.shape(inputs)[1]
  words = _WordCoordinates(lengths, max_time)
  packed = tf.gather_nd(inputs, words.batch_time)             # [N, D]
  for layer in range(num_layers):
    with tf1.variable_scope(f"bilstm_{layer}"):
      packed = _bidirectional_layer(packed, words, units)     # [N, 2 units]
    if is_training and dropout and layer + 1 < num_layers:
      packed = tf.nn.dropout(packed, rate=dropout)
  return tf.scatter_nd(words.batch_time, packed,
                       tf.stack([batch, max_time, 2 * units]))


class _WordCoordinates:
  """Where each of the N real words sits in the batch and in each loop.

  Attributes:
    batch_time: int32 [N, 2] (row, word) of every real word, row-major.
    loop_indices: int32 [2N, 3] (step, direction, row): the forward loop
      reads word t of a row at step t, the backward loop at step
      length - 1 - t. First the N forward, then the N backward indices.
    steps: int32 [] loop steps, max(max(lengths), 1).
    batch: int32 [] B.
  """

  def __init__(self, lengths: tf.Tensor, max_time: tf.Tensor):
    lengths = tf.convert_to_tensor(lengths, tf.int32)
    self.batch_time = tf.cast(
        tf.where(tf.sequence_mask(lengths, max_time)), tf.int32)
    rows, times = self.batch_time[:, 0], self.batch_time[:, 1]
    reversed_times = tf.gather(lengths, rows) - 1 - times
    self.loop_indices = tf.concat([
        tf.stack([times, tf.zeros_like(rows), rows], axis=1),
        tf.stack([reversed_times, tf.ones_like(rows), rows], axis=1)], 0)
    self.steps = tf.maximum(tf.reduce_max(lengths), 1)
    self.batch = tf.shape(lengths)[0]


def _bidirectional_layer(packed: tf.Tensor, words: _WordCoordinates,
                         units: int) -> tf.Tensor:
  """One layer on packed words: float32 [N, D] -> [N, 2 * units]."""
  input_size = packed.shape[-1]
  if input_size is None:
    raise ValueError("The BiLSTM's input needs a static last dimension.")
  input_gates, recurrent_kernels = [], []
  with tf1.variable_scope("bidirectional_rnn"):
    for direction_scope, cell_name in DIRECTIONS:
      with tf1.variable_scope(direction_scope), \
          tf1.variable_scope(cell_name):
        kernel = tf1.get_variable(
            "kernel", [input_size + units, 4 * units],
            initializer=tf1.glorot_uniform_initializer())
        bias = tf1.get_variable("bias", [4 * units],
                                initializer=tf1.zeros_initializer())
      input_kernel, recurrent_kernel = tf.split(kernel, [input_size, units])
      input_gates.append(tf.matmul(packed, input_kernel) + bias)  # [N, 4u]
      recurrent_kernels.append(recurrent_kernel)
  # Time-major loop input: step, direction, row. Padding slots stay zero;
  # they come after every real step of their row and are never read back.
  loop_inputs = tf.scatter_nd(
      words.loop_indices, tf.concat(input_gates, 0),
      tf.stack([words.steps, 2, words.batch, 4 * units]))
  hidden = _recurrence(loop_inputs, tf.stack(recurrent_kernels))
  forward, backward = tf.split(tf.gather_nd(hidden, words.loop_indices), 2)
  return tf.concat([forward, backward], axis=1)


def _cell(gates: tf.Tensor, cell: tf.Tensor):
  """LSTMCell's gate math: (activated i, j, f, o, new c, new h)."""
  i, j, f, o = tf.split(gates, 4, axis=-1)
  i, j, f, o = (tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f + FORGET_BIAS),
                tf.sigmoid(o))
  cell = f * cell + i * j
  return i, j, f, o, cell, o * tf.tanh(cell)


@tf.custom_gradient
def _recurrence(loop_inputs: tf.Tensor, recurrent_kernels: tf.Tensor):
  """The recurrent part of S LSTMs run side by side, from zero states.

  Args:
    loop_inputs: float32 [T, S, B, 4 * units], x_t @ kernel[:input] + bias.
    recurrent_kernels: float32 [S, units, 4 * units], kernel[input:].

  Returns:
    float32 [T, S, B, units], h at every step (past a row's end too; callers
    read only real steps).
  """
  steps, units = tf.shape(loop_inputs)[0], tf.shape(recurrent_kernels)[1]
  zeros = tf.zeros(tf.concat([tf.shape(loop_inputs)[1:3], [units]], 0))
  inputs = tf.TensorArray(tf.float32, size=steps).unstack(loop_inputs)

  def step(time, cell, hidden, saved):
    gates = inputs.read(time) + tf.matmul(hidden, recurrent_kernels)
    i, j, f, o, new_cell, hidden = _cell(gates, cell)
    # Per step, in one array (one loop variable): what the gradient reads.
    return (time + 1, new_cell, hidden, saved.write(
        time, tf.concat([i, j, f, o, cell, new_cell, hidden], -1)))

  saved = tf.while_loop(
      lambda time, *_: time < steps, step,
      (0, zeros, zeros, tf.TensorArray(tf.float32, size=steps)))[-1]
  hidden = saved.stack()[..., 6 * units:]

  def gradient(upstream):
    return _backpropagate(upstream, saved, hidden, recurrent_kernels)

  return hidden, gradient


def _backpropagate(upstream, saved, hidden, recurrent_kernels):
  """Backpropagation through time of `_recurrence`.

  Args:
    upstream: float32 [T, S, B, units], d loss / d h_t from outside.
    saved: `tf.TensorArray` of T float32 [S, B, 7 * units]: activated
      i, j, f, o, c_{t-1}, c_t, h_t.
    hidden: float32 [T, S, B, units], h_t.
    recurrent_kernels: float32 [S, units, 4 * units].

  Returns:
    (d loop_inputs [T, S, B, 4 * units], d recurrent_kernels).
  """
  steps, units = tf.shape(hidden)[0], tf.shape(hidden)[3]
  outside = tf.TensorArray(tf.float32, size=steps).unstack(upstream)

  def step(time, cell_grad, hidden_grad, gate_grads):
    i, j, f, o, previous_cell, cell, _ = tf.split(saved.read(time), 7, -1)
    tanh_cell = tf.tanh(cell)
    hidden_grad += outside.read(time)
    cell_grad += hidden_grad * o * (1.0 - tf.square(tanh_cell))
    gate_grad = tf.concat([
        cell_grad * j * i * (1.0 - i),
        cell_grad * i * (1.0 - tf.square(j)),
        cell_grad * previous_cell * f * (1.0 - f),
        hidden_grad * tanh_cell * o * (1.0 - o)], -1)
    return (time - 1, cell_grad * f,
            tf.matmul(gate_grad, recurrent_kernels, transpose_b=True),
            gate_grads.write(time, gate_grad))

  zeros = tf.zeros_like(upstream[0])
  gate_grads = tf.while_loop(
      lambda time, *_: time >= 0, step,
      (steps - 1, zeros, zeros,
       tf.TensorArray(tf.float32, size=steps)))[-1].stack()
  # sum_t h_{t-1}^T dgates_t, per direction one matmul over T * B rows.
  previous_hidden = tf.concat([tf.zeros_like(hidden[:1]), hidden[:-1]], 0)
  kernel_grad = tf.stack([
      tf.matmul(tf.reshape(previous_hidden[:, direction], [-1, units]),
                tf.reshape(gate_grads[:, direction], [-1, 4 * units]),
                transpose_a=True)
      for direction in range(len(DIRECTIONS))])
  return gate_grads, kernel_grad
