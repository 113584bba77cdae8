// Fixed-latency AXI4 slave memory for hardware-in-the-loop runs; no Python in the per-clock loop.
//
// Timing (matches emu/timing.py, one burst at a time per direction):
//   read:  AR accepted at cycle a (arready is high while idle) -> first R beat valid at a + 2, then one
//          beat a cycle while rready (DMA_READ_LATENCY = 2).
//   write: AW accepted at cycle a -> W accepted from a + 1, one a cycle -> B valid the cycle after the last
//          W beat (DMA_WRITE_LATENCY = 2: the AW cycle plus the B cycle).
// A beat whose word lies at or past +MEM_SIZE (bytes, plusarg) answers SLVERR (reads return 0, writes are
// dropped). Contents: $readmemh(+MEM_IN) at time 0 and again on a cycle with `load` high (one DATA_BYTES-wide
// word per line, word 0 first: a simulation that serves many runs reloads the file between them);
// $writememh(+MEM_OUT) of the first MEM_SIZE bytes on a cycle with `dump` high.
module systola_axi_mem #(
    parameter DATA_BYTES = 8,
    parameter ID_BITS = 1,
    parameter WORDS = 1 << 20
) (
    input  wire clk,
    input  wire rst,
    input  wire load,
    input  wire dump,
    input  wire [ID_BITS-1:0] awid, input wire [31:0] awaddr, input wire [7:0] awlen,
    input  wire [2:0] awsize, input wire [1:0] awburst, input wire awvalid, output wire awready,
    input  wire [8*DATA_BYTES-1:0] wdata, input wire [DATA_BYTES-1:0] wstrb, input wire wlast,
    input  wire wvalid, output wire wready,
    output reg  [ID_BITS-1:0] bid, output reg [1:0] bresp, output reg bvalid, input wire bready,
    input  wire [ID_BITS-1:0] arid, input wire [31:0] araddr, input wire [7:0] arlen,
    input  wire [2:0] arsize, input wire [1:0] arburst, input wire arvalid, output wire arready,
    output reg  [ID_BITS-1:0] rid, output reg [8*DATA_BYTES-1:0] rdata, output reg [1:0] rresp,
    output reg  rlast, output reg rvalid, input wire rready
);
    localparam LG = $clog2(DATA_BYTES);
    reg [8*DATA_BYTES-1:0] mem [0:WORDS-1];
    reg [31:0] size_words;
    reg [1023:0] in_file, out_file;
    integer i;

    initial begin
        size_words = 0;
        if ($value$plusargs("MEM_SIZE=%d", size_words)) size_words = size_words >> LG;
        if ($value$plusargs("MEM_IN=%s", in_file)) $readmemh(in_file, mem);
        if (!$value$plusargs("MEM_OUT=%s", out_file)) out_file = "mem_out.hex";
    end

    always @(posedge clk) begin
        if (load) $readmemh(in_file, mem);
        if (dump) $writememh(out_file, mem, 0, size_words - 1);
    end

    // ---- read engine ----
    reg [1:0] rstate;        // 0 idle, 1 fetch, 2 data
    reg [31:0] rword;        // word index of the next beat
    reg [7:0] rleft;         // beats left after the current one
    assign arready = (rstate == 2'd0);
    wire [31:0] rnext = (rstate == 2'd1) ? rword : rword + 1;
    always @(posedge clk) begin
        if (rst) begin
            rstate <= 2'd0; rvalid <= 1'b0; rlast <= 1'b0; rresp <= 2'd0; rid <= 0; rdata <= 0;
        end else case (rstate)
            2'd0: if (arvalid) begin
                rword <= araddr >> LG; rleft <= arlen; rid <= arid; rstate <= 2'd1;
            end
            2'd1: begin
                rdata <= (rword < size_words) ? mem[rword[$clog2(WORDS)-1:0]] : 0;
                rresp <= (rword < size_words) ? 2'd0 : 2'd2;
                rlast <= (rleft == 0); rvalid <= 1'b1; rstate <= 2'd2;
            end
            default: if (rready) begin
                if (rleft == 0) begin
                    rvalid <= 1'b0; rlast <= 1'b0; rstate <= 2'd0;
                end else begin
                    rword <= rnext; rleft <= rleft - 1;
                    rdata <= (rnext < size_words) ? mem[rnext[$clog2(WORDS)-1:0]] : 0;
                    rresp <= (rnext < size_words) ? 2'd0 : 2'd2;
                    rlast <= (rleft == 1);
                end
            end
        endcase
    end

    // ---- write engine ----
    reg [1:0] wstate;        // 0 idle, 1 data, 2 response
    reg [31:0] wword;
    reg werr;
    assign awready = (wstate == 2'd0);
    assign wready = (wstate == 2'd1);
    always @(posedge clk) begin
        if (rst) begin
            wstate <= 2'd0; bvalid <= 1'b0; bresp <= 2'd0; bid <= 0; werr <= 1'b0;
        end else case (wstate)
            2'd0: if (awvalid) begin
                wword <= awaddr >> LG; bid <= awid; werr <= 1'b0; wstate <= 2'd1;
            end
            2'd1: if (wvalid) begin
                if (wword < size_words) begin
                    for (i = 0; i < DATA_BYTES; i = i + 1)
                        if (wstrb[i]) mem[wword[$clog2(WORDS)-1:0]][8*i +: 8] <= wdata[8*i +: 8];
                end else werr <= 1'b1;
                wword <= wword + 1;
                if (wlast) begin
                    bvalid <= 1'b1; bresp <= (werr || wword >= size_words) ? 2'd2 : 2'd0; wstate <= 2'd2;
                end
            end
            default: if (bready) begin
                bvalid <= 1'b0; wstate <= 2'd0;
            end
        endcase
    end
endmodule
