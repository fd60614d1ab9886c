// fireflow's sparse, weight-shared Dense layer for io_stream (the EIE idea): see flows/sparse/layout.py.
//
// Weights: a codebook (entry 0 is zero) and, per processing element (PE), a ROM of entry words
// `code << index_bits | gap` walking the PE's rows (outputs p, p + n_pe, ...) in relative-index form.
// Each PE does one multiply-accumulate per clock; the accumulator is the layer's accum_t, reset to the
// row's bias, and cast to the result type when the PE leaves the row: the same arithmetic as hls4ml's
// Dense (acc = (accum_t) bias; acc += (accum_t) (x * w); res = (res_T) acc), summed in another order,
// which is exact for a wrapping accumulator.
//
// Two dataflow processes: `sparse_dense_load` copies the input words into n_copies dual-port buffers
// (one element per clock, ping-pong between images), `sparse_dense_compute` runs the PEs, then writes
// the result words. Throughput: one image per max(n_in, n_steps + n_rows + n_out / res_T::size) clocks.

#ifndef NNET_SPARSE_DENSE_H_
#define NNET_SPARSE_DENSE_H_

#include "ap_int.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

struct sparse_dense_config {
    static const unsigned n_in = 10;
    static const unsigned n_out = 10;
    static const unsigned n_pe = 1;         // processing elements
    static const unsigned n_rows = 10;      // outputs per PE: ceil(n_out / n_pe)
    static const unsigned n_steps = 1;      // entries per PE (the longest PE's; the others padded)
    static const unsigned n_codes = 2;      // codebook entries, entry 0 the zero weight
    static const unsigned code_bits = 1;    // entry word: code_bits + index_bits
    static const unsigned index_bits = 1;   // relative index; 2^index_bits <= n_in
    static const unsigned n_copies = 1;     // input buffer copies, one per pes_per_copy PEs
    static const unsigned pes_per_copy = 2; // PEs reading one dual-port copy
    static const unsigned col_bits = 8;     // holds 0 .. 2 * n_in - 1
    static const unsigned row_bits = 4;     // holds 0 .. n_rows - 1
    typedef float accum_t;
    typedef float bias_t;
    typedef float weight_t;
    typedef ap_uint<2> entry_t;
};

template <class data_T, typename CONFIG_T>
void sparse_dense_load(hls::stream<data_T> &data_stream,
                       typename data_T::value_type xbuf[CONFIG_T::n_copies][CONFIG_T::n_in]) {
    data_T word;
    unsigned lane = 0;
LoadInput:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS PIPELINE II=1
        if (lane == 0) {
            word = data_stream.read();
        }
    LoadCopies:
        for (unsigned k = 0; k < CONFIG_T::n_copies; k++) {
            #pragma HLS UNROLL
            xbuf[k][i] = word[lane];
        }
        lane = (lane == data_T::size - 1) ? 0 : lane + 1;
    }
}

template <class x_T, class res_T, typename CONFIG_T>
void sparse_dense_compute(x_T xbuf[CONFIG_T::n_copies][CONFIG_T::n_in], hls::stream<res_T> &res_stream,
                          const typename CONFIG_T::weight_t codebook[CONFIG_T::n_codes],
                          const typename CONFIG_T::entry_t entries[CONFIG_T::n_steps * CONFIG_T::n_pe],
                          const typename CONFIG_T::bias_t biases[CONFIG_T::n_rows * CONFIG_T::n_pe]) {
    typedef typename CONFIG_T::accum_t accum_t;
    typedef typename res_T::value_type out_t;
    // every PE reads step t's entry in the same clock: one ROM word of n_pe entries per step (a wide ROM
    // fills the block RAMs' aspect ratios; one ROM per PE would take a block RAM each);
    // each PE: its own bias ROM (cyclic banks, it reads its own row), a codebook lookup of its own (LUTs)
    #pragma HLS ARRAY_RESHAPE variable=entries cyclic factor=CONFIG_T::n_pe
    #pragma HLS ARRAY_PARTITION variable=biases cyclic factor=CONFIG_T::n_pe
    #pragma HLS ARRAY_PARTITION variable=codebook complete

    out_t res[CONFIG_T::n_rows][CONFIG_T::n_pe];
    #pragma HLS ARRAY_PARTITION variable=res complete dim=0
    accum_t sum[CONFIG_T::n_pe];
    #pragma HLS ARRAY_PARTITION variable=sum complete
    ap_uint<CONFIG_T::row_bits> row[CONFIG_T::n_pe];
    #pragma HLS ARRAY_PARTITION variable=row complete
    ap_uint<CONFIG_T::col_bits> next[CONFIG_T::n_pe]; // the column after the PE's last entry
    #pragma HLS ARRAY_PARTITION variable=next complete

Reset:
    for (unsigned p = 0; p < CONFIG_T::n_pe; p++) {
        #pragma HLS UNROLL
        sum[p] = (accum_t)biases[p];
        row[p] = 0;
        next[p] = 0;
    }

Walk:
    for (unsigned t = 0; t < CONFIG_T::n_steps; t++) {
        #pragma HLS PIPELINE II=1
    PE:
        for (unsigned p = 0; p < CONFIG_T::n_pe; p++) {
            #pragma HLS UNROLL
            const typename CONFIG_T::entry_t e = entries[t * CONFIG_T::n_pe + p];
            const ap_uint<CONFIG_T::index_bits> gap = e;
            const ap_uint<CONFIG_T::code_bits> code = e >> CONFIG_T::index_bits;
            const bool advance = (code != 0) || (gap != 0); // code 0, gap 0: padding, the PE stays
            ap_uint<CONFIG_T::col_bits> col = next[p] + gap;
            if (advance && col >= CONFIG_T::n_in) { // the entry lies in the PE's next row
                col -= CONFIG_T::n_in;
                res[row[p]][p] = (out_t)sum[p];
                row[p]++;
                sum[p] = (accum_t)biases[row[p] * CONFIG_T::n_pe + p];
            }
            if (advance) {
                next[p] = col + 1;
            }
            const x_T x = xbuf[p / CONFIG_T::pes_per_copy][advance ? (unsigned)col : 0u];
            const accum_t prod = x * codebook[code]; // codebook[0] == 0: fillers add nothing
            sum[p] += prod;
        }
    }

Tail: // the row each PE ended in, and the rows after it (their bias only)
    for (unsigned r = 0; r < CONFIG_T::n_rows; r++) {
        #pragma HLS PIPELINE II=1
        for (unsigned p = 0; p < CONFIG_T::n_pe; p++) {
            #pragma HLS UNROLL
            if (r == row[p]) {
                res[r][p] = (out_t)sum[p];
            } else if (r > row[p]) {
                res[r][p] = (out_t)(accum_t)biases[r * CONFIG_T::n_pe + p];
            }
        }
    }

ResWrite:
    for (unsigned i = 0; i < CONFIG_T::n_out / res_T::size; i++) {
        #pragma HLS PIPELINE II=1
        res_T pack;
        PRAGMA_DATA_PACK(pack)
    ResPack:
        for (unsigned j = 0; j < res_T::size; j++) {
            #pragma HLS UNROLL
            const unsigned k = i * res_T::size + j;
            pack[j] = res[k / CONFIG_T::n_pe][k % CONFIG_T::n_pe];
        }
        res_stream.write(pack);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void sparse_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                  const typename CONFIG_T::weight_t codebook[CONFIG_T::n_codes],
                  const typename CONFIG_T::entry_t entries[CONFIG_T::n_steps * CONFIG_T::n_pe],
                  const typename CONFIG_T::bias_t biases[CONFIG_T::n_rows * CONFIG_T::n_pe]) {
    #pragma HLS INLINE off
    #pragma HLS DATAFLOW
    typename data_T::value_type xbuf[CONFIG_T::n_copies][CONFIG_T::n_in];
    // one memory per copy, two PEs reading it: HLS picks a two-port RAM (BRAM or LUTRAM by size)
    #pragma HLS ARRAY_PARTITION variable=xbuf complete dim=1

    sparse_dense_load<data_T, CONFIG_T>(data_stream, xbuf);
    sparse_dense_compute<typename data_T::value_type, res_T, CONFIG_T>(xbuf, res_stream, codebook, entries, biases);
}

} // namespace nnet

#endif
